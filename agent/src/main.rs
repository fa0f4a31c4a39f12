//! logtap (being written).
fn main() {}
