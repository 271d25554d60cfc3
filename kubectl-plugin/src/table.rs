//! Column-aligned text tables, as kubectl prints them: a header row, columns three spaces apart.

/// The table as text, one line per row, columns padded to their widest cell; the last column is
/// not padded, so lines carry no trailing spaces.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}   "));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_to_the_widest_cell() {
        let rows = vec![
            vec!["web".to_string(), "[#####-----] 52.0%".to_string()],
            vec!["checkout".to_string(), "-".to_string()],
        ];
        assert_eq!(
            render(&["NAME", "BUDGET"], &rows),
            "NAME       BUDGET\n\
             web        [#####-----] 52.0%\n\
             checkout   -\n"
        );
        assert_eq!(render(&["NAME", "BUDGET"], &[]), "NAME   BUDGET\n");
    }
}
