//! Contract 4, the Fluentd Forward protocol v1 (being written).
