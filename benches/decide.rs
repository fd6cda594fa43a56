//! Bench: policy plan + decide (filled in below).
fn main() {}
