//! `tealight chat`: a multi-turn streaming chat in the terminal.
