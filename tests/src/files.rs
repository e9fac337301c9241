//! CSV files the tests write or read back.

use std::path::Path;

/// The rows of a CSV file (header first), as read by the csv crate.
pub fn csv_rows(path: &Path) -> Vec<Vec<String>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_path(path)
        .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    r.records()
        .map(|rec| rec.expect("csv record").iter().map(String::from).collect())
        .collect()
}

/// The cells of the columns `names` of every row of a CSV file, after its
/// header, an empty cell as none; sorted, to compare with [`crate::rows`].
pub fn csv_columns(path: &Path, names: &[&str]) -> Vec<Vec<Option<String>>> {
    let csv = csv_rows(path);
    let header = &csv[0];
    let at: Vec<usize> = names
        .iter()
        .map(|name| {
            header
                .iter()
                .position(|h| h == name)
                .unwrap_or_else(|| panic!("no column {name} in the header {header:?}"))
        })
        .collect();
    let mut out: Vec<Vec<Option<String>>> = csv[1..]
        .iter()
        .map(|row| {
            at.iter()
                .map(|&i| Some(row[i].clone()).filter(|s| !s.is_empty()))
                .collect()
        })
        .collect();
    out.sort();
    out
}
