//! Runs the real `logtap` binary (being written).
