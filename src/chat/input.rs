//! Lines from the person (or the script) at the other end. On a terminal, rustyline gives line
//! editing and history; otherwise lines are read plainly from stdin and echoed after the
//! prompt, so a piped session's transcript shows both sides.
//!
//! Reading blocks, so it happens on its own thread, one line per request: the terminal is in
//! raw mode only while a line is being read, which leaves Ctrl-C during an answer to the
//! signal handler that stops the answer.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// What one read produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputEvent {
    Line(String),
    /// Ctrl-C at the prompt: forget the half-typed line, ask again.
    Interrupted,
    /// Ctrl-D or the end of piped input.
    Eof,
}

/// The reading thread's handle.
pub struct LineInput {
    requests: mpsc::Sender<(String, oneshot::Sender<InputEvent>)>,
    terminal: bool,
}

impl LineInput {
    /// Starts the reader: rustyline when stdin is a terminal, plain lines otherwise.
    pub fn start() -> Self {
        let terminal = std::io::stdin().is_terminal();
        let (requests, rx) = mpsc::channel::<(String, oneshot::Sender<InputEvent>)>();
        std::thread::spawn(move || {
            let mut reader = Reader::new(terminal);
            while let Ok((prompt, reply)) = rx.recv() {
                let event = reader.read(&prompt);
                let eof = event == InputEvent::Eof;
                if reply.send(event).is_err() || eof {
                    break;
                }
            }
        });
        Self { requests, terminal }
    }

    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// Shows `prompt` and waits for the next line.
    pub async fn read(&self, prompt: &str) -> InputEvent {
        let (reply, event) = oneshot::channel();
        if self.requests.send((prompt.to_owned(), reply)).is_err() {
            return InputEvent::Eof;
        }
        event.await.unwrap_or(InputEvent::Eof)
    }
}

enum Reader {
    Editor(Box<rustyline::DefaultEditor>),
    Plain,
}

impl Reader {
    fn new(terminal: bool) -> Self {
        if terminal && let Ok(editor) = rustyline::DefaultEditor::new() {
            return Reader::Editor(Box::new(editor));
        }
        Reader::Plain
    }

    fn read(&mut self, prompt: &str) -> InputEvent {
        match self {
            Reader::Editor(editor) => match editor.readline(prompt) {
                Ok(line) => {
                    if !line.trim().is_empty() {
                        let _ = editor.add_history_entry(line.as_str());
                    }
                    InputEvent::Line(line)
                }
                Err(rustyline::error::ReadlineError::Interrupted) => InputEvent::Interrupted,
                Err(_) => InputEvent::Eof,
            },
            Reader::Plain => {
                let mut line = String::new();
                match std::io::stdin().lock().read_line(&mut line) {
                    Ok(0) | Err(_) => InputEvent::Eof,
                    Ok(_) => {
                        let line = line.trim_end_matches(['\n', '\r']).to_owned();
                        let mut out = std::io::stdout().lock();
                        let _ = writeln!(out, "{prompt}{line}");
                        let _ = out.flush();
                        InputEvent::Line(line)
                    }
                }
            }
        }
    }
}
