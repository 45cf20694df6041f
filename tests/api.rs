//! HTTP API tests (filled in below).
