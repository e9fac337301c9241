"""Loads the benchmark's contacts CSV into PostgreSQL with dlt (the `pg-bench` peer).

    dlt_load.py full|incremental CSV PIPELINES_DIR

- `full`: every row, write disposition `replace`, into table `dlt_contacts`
  of dataset (schema) `dlt`;
- `incremental`: rows whose `updated_at` is past the last value seen
  (`dlt.sources.incremental`), write disposition `merge` on primary key `id`.

Both runs track `updated_at`, so the incremental one starts where the full
one ended. The pipeline's working folder is PIPELINES_DIR, so separate runs of
the benchmark share no state. The credentials come from dlt's own
configuration, for example the environment variable
`DESTINATION__POSTGRES__CREDENTIALS=postgresql://postgres:PASSWORD@127.0.0.1:PORT/bench`
(dlt refuses credentials without a password, even when the server trusts).
Prints the rows the run read from the CSV and loaded, as `rows: N`.
"""

import csv
import sys

import dlt

# The typed columns; dlt converts the CSV's text to these types.
COLUMNS = {
    "id": {"data_type": "bigint", "nullable": False},
    "birth_date": {"data_type": "date"},
    "balance": {"data_type": "decimal", "precision": 14, "scale": 2},
    "tags": {"data_type": "json"},
    "updated_at": {"data_type": "timestamp"},
}

# Rows per item handed to dlt: lists are much faster than one dict at a time.
BATCH = 10_000


def main(argv):
    if len(argv) != 4 or argv[1] not in ("full", "incremental"):
        sys.exit("usage: dlt_load.py full|incremental CSV PIPELINES_DIR")
    mode, path, pipelines_dir = argv[1], argv[2], argv[3]

    @dlt.resource(name="dlt_contacts", primary_key="id", columns=COLUMNS)
    def contacts(updated_at=dlt.sources.incremental("updated_at")):
        with open(path, newline="", encoding="utf-8") as f:
            batch = []
            for row in csv.DictReader(f):
                batch.append(row)
                if len(batch) == BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch

    pipeline = dlt.pipeline(
        pipeline_name="contacts",
        destination="postgres",
        dataset_name="dlt",
        pipelines_dir=pipelines_dir,
    )
    disposition = "replace" if mode == "full" else "merge"
    info = pipeline.run(contacts(), write_disposition=disposition)
    info.raise_on_failed_jobs()
    rows = pipeline.last_trace.last_normalize_info.row_counts.get("dlt_contacts", 0)
    print(f"rows: {rows}")


if __name__ == "__main__":
    main(sys.argv)
