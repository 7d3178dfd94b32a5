//! The practical limit for parse + write: a plain `csv`-crate pass-through
//! copy on one thread, reusing one `ByteRecord`. `scripts/bench.sh`
//! compares piigate against it.
//!
//! Usage: `cargo run --release --example csv_copy -- INPUT OUTPUT`

use std::io::{BufReader, BufWriter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        return Err("usage: csv_copy INPUT OUTPUT".into());
    };
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(BufReader::with_capacity(256 * 1024, std::fs::File::open(input)?));
    let mut wtr = csv::Writer::from_writer(BufWriter::with_capacity(256 * 1024, std::fs::File::create(output)?));
    let mut rec = csv::ByteRecord::new();
    let mut rows = 0u64;
    while rdr.read_byte_record(&mut rec)? {
        wtr.write_byte_record(&rec)?;
        rows += 1;
    }
    wtr.flush()?;
    eprintln!("csv_copy: {rows} records");
    Ok(())
}
