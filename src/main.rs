fn main() {
    println!("tealight");
}
