//! Contract 2's shared-memory ring (being written; see DESIGN.md Contract 2).
