//! The report a scenario ends with: each expectation, what was measured, and whether it held;
//! the run passes when every one did.

/// One line of the report.
struct Expectation {
    phase: &'static str,
    expected: String,
    measured: String,
    held: bool,
}

/// The expectations of a run, in the order checked.
#[derive(Default)]
pub(crate) struct Report {
    lines: Vec<Expectation>,
}

impl Report {
    /// Records an expectation of `phase`.
    pub(crate) fn expect(
        &mut self,
        phase: &'static str,
        expected: impl Into<String>,
        measured: String,
        held: bool,
    ) {
        self.lines.push(Expectation {
            phase,
            expected: expected.into(),
            measured,
            held,
        });
    }

    /// Prints the table and the result line; whether every expectation held.
    pub(crate) fn print(&self) -> bool {
        println!("\n## msakit demo report\n");
        println!("| phase | expected | measured | result |\n|---|---|---|---|");
        for e in &self.lines {
            println!(
                "| {} | {} | {} | {} |",
                e.phase,
                e.expected,
                e.measured,
                if e.held { "PASS" } else { "FAIL" }
            );
        }
        let held = self.lines.iter().all(|e| e.held);
        println!(
            "\n{}",
            if held {
                "RESULT: PASS — every expectation held"
            } else {
                "RESULT: FAIL"
            }
        );
        held
    }
}
