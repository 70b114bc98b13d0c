//! What a line typed at the chat prompt means. The words are the ones people type in the
//! OpenAI quick-start chat bots, in English and Chinese.

/// One line of input, interpreted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Send this text as the next user message.
    Send(String),
    /// Forget the conversation, keep the system prompt.
    Clear,
    /// Leave.
    Exit,
    /// Nothing typed: ask again.
    Empty,
}

impl Command {
    pub fn parse(line: &str) -> Self {
        let text = line.trim();
        let word = text.strip_prefix('/').unwrap_or(text).to_lowercase();
        match word.as_str() {
            "" => Command::Empty,
            "clear" | "reset" | "清除" | "重置" => Command::Clear,
            "exit" | "quit" | "退出" => Command::Exit,
            _ => Command::Send(text.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Command;

    #[test]
    fn commands_are_recognised_in_both_languages() {
        for clear in ["clear", " Reset ", "/clear", "清除", "重置"] {
            assert_eq!(Command::parse(clear), Command::Clear, "{clear}");
        }
        for exit in ["exit", "QUIT", "/exit", "退出"] {
            assert_eq!(Command::parse(exit), Command::Exit, "{exit}");
        }
        assert_eq!(Command::parse("   "), Command::Empty);
        assert_eq!(
            Command::parse("  clear the table please "),
            Command::Send("clear the table please".into())
        );
    }
}
