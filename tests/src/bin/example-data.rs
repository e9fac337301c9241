//! The bundled example's data.
//!
//! `example-data DIR [COUNT]` generates a CRM database with COUNT contacts
//! (default 1000), an empty shop database with another schema and an empty
//! CSV folder; `example-data show DIR` prints what the sync produced.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["show", dir] => show(Path::new(dir)),
        [dir] => generate(&PathBuf::from(dir), 1000),
        [dir, n] => generate(
            &PathBuf::from(dir),
            n.parse()
                .map_err(|e| format!("COUNT '{n}' is not a number: {e}"))?,
        ),
        _ => Err("usage: example-data DIR [COUNT] | example-data show DIR".into()),
    }
}

fn generate(dir: &Path, count: usize) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir.join("csv"))?;
    for f in [
        "crm.db",
        "crm.db-wal",
        "crm.db-shm",
        "shop.db",
        "weir.db",
        "weir.db-wal",
        "weir.db-shm",
        "csv/contacts.csv",
    ] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    weir_tests::crm_db(&dir.join("crm.db"), count)?;
    weir_tests::shop_db(&dir.join("shop.db"))?;
    println!(
        "generated {count} contacts in {}",
        dir.join("crm.db").display()
    );
    Ok(())
}

fn show(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let crm = weir_tests::rows(&dir.join("crm.db"), "SELECT count(*) FROM contacts");
    let shop = weir_tests::rows(&dir.join("shop.db"), "SELECT count(*) FROM customers");
    println!(
        "crm.db contacts: {} rows; shop.db customers: {} rows",
        crm[0][0].as_deref().unwrap_or("0"),
        shop[0][0].as_deref().unwrap_or("0")
    );
    println!("\nshop.db customers (first 3, other column names):");
    let conn = rusqlite::Connection::open(dir.join("shop.db"))?;
    let mut st = conn.prepare(
        "SELECT customer_id, fname, lname, mail, phone FROM customers ORDER BY customer_id LIMIT 3",
    )?;
    let mut rows = st.query([])?;
    while let Some(r) = rows.next()? {
        println!(
            "  {} | {} | {} | {} | {}",
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, Option<String>>(4)?.unwrap_or_default()
        );
    }
    let csv = weir_tests::csv_rows(&dir.join("csv").join("contacts.csv"));
    println!(
        "\ncsv/contacts.csv ({} records, first 3):",
        csv.len().saturating_sub(1)
    );
    for row in csv.iter().take(4) {
        println!("  {}", row.join(","));
    }
    Ok(())
}
