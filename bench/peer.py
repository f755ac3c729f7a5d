"""One export by a peer engine, as one process (bench/formats.py times it with /usr/bin/time -v).

    peer.py duckdb|chdb CASE PARQUET ENDPOINT BUCKET KEY

CASE is csv-zstd, csv-gzip6, parquet-zstd or jsonl-zstd. Reads the Parquet file, writes one
object to s3://BUCKET/KEY on the S3-compatible ENDPOINT (LocalStack: any key, path style).
Prints the seconds the export statement itself took (the rest is interpreter start and import).
Also: peer.py duckdb to-parquet CSV PARQUET COMPRESSION (makes the peers' source file), and
peer.py duckdb|chdb to-file-csv|to-file-tsv PARQUET OUT (the streaming benchmark's peers:
the Parquet file's rows as CSV or TSV with a header, into a local file).
"""

import glob
import os
import sys
import time


def duckdb_connect(endpoint):
    import duckdb

    con = duckdb.connect()
    # DuckDB cannot download its httpfs extension here: load the one its PyPI package ships.
    import duckdb_extension_httpfs

    ext = glob.glob(os.path.join(os.path.dirname(duckdb_extension_httpfs.__file__), "extensions", "*", "httpfs.duckdb_extension"))
    con.execute(f"LOAD '{ext[0]}'")
    host = endpoint.split("://", 1)[1].rstrip("/")
    con.execute(
        f"CREATE SECRET ls (TYPE s3, KEY_ID 'test', SECRET 'test', REGION 'us-east-1', "
        f"ENDPOINT '{host}', URL_STYLE 'path', USE_SSL {str(endpoint.startswith('https')).lower()})"
    )
    return con


DUCKDB_OPTIONS = {
    # DuckDB's gzip has no level setting (its default, 6 in zlib terms).
    "csv-gzip6": "FORMAT csv, HEADER, COMPRESSION gzip",
    "csv-zstd": "FORMAT csv, HEADER, COMPRESSION zstd",
    "jsonl-zstd": "FORMAT json, COMPRESSION zstd",
    "parquet-zstd": "FORMAT parquet, COMPRESSION zstd",
}

CHDB_FORMATS = {
    "csv-gzip6": ("CSVWithNames", "output_format_compression_level=6"),
    "csv-zstd": ("CSVWithNames", "output_format_compression_level=3"),
    "jsonl-zstd": ("JSONEachRow", "output_format_compression_level=3"),
    "parquet-zstd": ("Parquet", "output_format_parquet_compression_method='zstd'"),
}


def main():
    engine, case = sys.argv[1], sys.argv[2]
    if engine == "duckdb" and case == "to-parquet":
        csv, parquet, compression = sys.argv[3:6]
        import duckdb

        duckdb.connect().execute(
            f"COPY (SELECT * FROM read_csv('{csv}', header = true)) TO '{parquet}' "
            f"(FORMAT parquet, COMPRESSION {compression})"
        )
        return
    if case.startswith("to-file-"):
        fmt = case.removeprefix("to-file-")
        parquet, out = sys.argv[3:5]
        start = time.monotonic()
        if engine == "duckdb":
            import duckdb

            delim = "\t" if fmt == "tsv" else ","
            duckdb.connect().execute(
                f"COPY (SELECT * FROM read_parquet('{parquet}')) TO '{out}' (FORMAT csv, HEADER, DELIMITER '{delim}')"
            )
        else:
            import chdb

            name = "TabSeparatedWithNames" if fmt == "tsv" else "CSVWithNames"
            chdb.query(f"SELECT * FROM file('{parquet}', Parquet) INTO OUTFILE '{out}' TRUNCATE FORMAT {name}")
        print(f"{time.monotonic() - start:.3f}")
        return
    parquet, endpoint, bucket, key = sys.argv[3:7]
    if engine == "duckdb":
        con = duckdb_connect(endpoint)
        start = time.monotonic()
        con.execute(f"COPY (SELECT * FROM read_parquet('{parquet}')) TO 's3://{bucket}/{key}' ({DUCKDB_OPTIONS[case]})")
    elif engine == "chdb":
        import chdb

        fmt, setting = CHDB_FORMATS[case]
        start = time.monotonic()
        # The compression follows the key's extension (.gz, .zst).
        chdb.query(
            f"INSERT INTO FUNCTION s3('{endpoint.rstrip('/')}/{bucket}/{key}', 'test', 'test', '{fmt}') "
            f"SELECT * FROM file('{parquet}', Parquet) SETTINGS s3_truncate_on_insert=1, {setting}"
        )
    else:
        sys.exit(f"unknown engine {engine}")
    print(f"{time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
