//! A ferry child process whose stdout and stderr are read as they come. A pipe nobody reads
//! holds 64 KiB: a long-running ferry that logs verbosely would block on its next log line and
//! stop answering, which a test would mistake for a ferry bug.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running child whose output is collected by two reader threads.
pub struct Watched {
    child: Child,
    output: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Watched {
    /// Spawns `command` with its stdout and stderr piped and read continuously.
    pub fn spawn(mut command: Command) -> Watched {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ferry");
        let output = Arc::new(Mutex::new(String::new()));
        let streams = [
            Box::new(child.stderr.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ];
        let readers = streams
            .into_iter()
            .map(|stream| {
                let out = output.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(stream).lines().map_while(Result::ok) {
                        let mut o = out.lock().unwrap();
                        o.push_str(&line);
                        o.push('\n');
                    }
                })
            })
            .collect();
        Watched {
            child,
            output,
            readers,
        }
    }

    /// Sends the child a signal (`-INT`, `-TERM`).
    pub fn signal(&self, sig: &str) {
        let sent = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {sig}");
    }

    /// Kills the child (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }

    /// Everything the child printed so far.
    pub fn text(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the child printed `needle`, failing the test after `within`.
    pub async fn wait_for(&self, needle: &str, within: Duration) {
        let start = Instant::now();
        while !self.text().contains(needle) {
            assert!(
                start.elapsed() < within,
                "'{needle}' not seen within {within:?}:\n{}",
                self.text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits up to `within` for the child to exit: its exit code and everything it printed.
    pub async fn finish_within(mut self, within: Duration) -> (i32, String) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                for reader in self.readers.drain(..) {
                    reader.join().unwrap();
                }
                return (status.code().unwrap_or(-1), self.text());
            }
            if start.elapsed() > within {
                self.child.kill().ok();
                panic!("ferry did not finish within {within:?}:\n{}", self.text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// [`Watched::finish_within`] 60 s (a live run ends when writes have been idle).
    pub async fn finish(self) -> (i32, String) {
        self.finish_within(Duration::from_secs(60)).await
    }
}
