//! ssl-eval
