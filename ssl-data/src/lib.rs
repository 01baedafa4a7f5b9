//! ssl-data
