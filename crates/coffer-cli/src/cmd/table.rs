//! Plain aligned tables for human output (`--json` gives the same data for scripts).

/// A table of text cells, columns as wide as their widest cell.
pub struct Table<const N: usize> {
    header: [&'static str; N],
    rows: Vec<[String; N]>,
}

impl<const N: usize> Table<N> {
    /// A table with these column titles.
    pub fn new(header: [&'static str; N]) -> Self {
        Self {
            header,
            rows: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: [String; N]) {
        self.rows.push(cells);
    }

    /// Prints the table to standard output.
    pub fn print(&self) {
        self.print_indented("");
    }

    /// Prints the table with each line indented.
    pub fn print_indented(&self, indent: &str) {
        let mut widths = self.header.map(str::len);
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: [&str; N]| {
            let mut out = String::from(indent);
            for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
                if i + 1 == N {
                    out.push_str(cell);
                } else {
                    out.push_str(&format!("{cell:<w$}  "));
                }
            }
            println!("{}", out.trim_end());
        };
        line(self.header);
        for row in &self.rows {
            line(std::array::from_fn(|i| row[i].as_str()));
        }
    }
}
