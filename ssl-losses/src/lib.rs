//! ssl-losses
