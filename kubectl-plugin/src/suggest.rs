//! "Did you mean …?" for a mistyped pipeline name: the names in the namespace within a few edits.

/// At most this many suggestions: more would bury the likely one.
const MAX_SUGGESTIONS: usize = 3;

/// The candidates close to `name`, closest first (ties by name): within two edits, or a third of
/// the name's length for long names.
pub fn suggestions<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let limit = (name.chars().count() / 3).max(2);
    let mut close: Vec<(usize, &str)> = candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .collect();
    close.sort();
    close.dedup();
    close
        .into_iter()
        .take(MAX_SUGGESTIONS)
        .map(|(_, c)| c.to_owned())
        .collect()
}

/// Edits (insertions, deletions, substitutions, swaps of neighbours) that turn `a` into `b`: the
/// optimal string alignment distance, so the common typo `wbe` for `web` counts as one edit.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // rows[i][j]: edits between a[..i] and b[..j].
    let mut rows = vec![vec![0; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let substitution = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + substitution);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distance_counts_edits_and_swaps_of_neighbours_as_one() {
        assert_eq!(distance("web", "web"), 0);
        assert_eq!(distance("wbe", "web"), 1);
        assert_eq!(distance("we", "web"), 1);
        assert_eq!(distance("wxb", "web"), 1);
        assert_eq!(distance("", "web"), 3);
        assert_eq!(distance("checkout", "chekcout"), 1);
        assert_eq!(distance("search", "web"), 5);
    }

    #[test]
    fn suggests_close_names_closest_first_and_not_far_ones() {
        let names = ["web", "webshop", "search", "we", "checkout"];
        assert_eq!(suggestions("wbe", names), ["we", "web"], "ties by name");
        assert_eq!(suggestions("webshp", names), ["webshop"]);
        assert_eq!(suggestions("chekout", names), ["checkout"]);
        assert!(suggestions("inventory", names).is_empty());
        assert_eq!(
            suggestions("w", ["a", "b", "c", "d"]).len(),
            MAX_SUGGESTIONS,
            "at most three"
        );
    }
}
