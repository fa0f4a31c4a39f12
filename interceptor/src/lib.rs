//! liblogtap.so (being written).
