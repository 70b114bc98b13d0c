//! How answers look. On a terminal, reasoning and the usage line are dimmed with ANSI codes;
//! anywhere else (a pipe, a file, a test) there are no escape codes, and reasoning is set off
//! with `<think>` tags instead so a transcript still shows which text was which.

#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub terminal: bool,
}

const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

impl Style {
    pub fn reasoning_start(self) -> &'static str {
        if self.terminal { DIM } else { "<think>\n" }
    }

    pub fn reasoning_end(self) -> &'static str {
        if self.terminal {
            "\x1b[0m\n"
        } else {
            "\n</think>\n"
        }
    }

    pub fn dim(self, text: &str) -> String {
        if self.terminal {
            format!("{DIM}{text}{RESET}")
        } else {
            text.to_owned()
        }
    }
}
