//! The one list of method names: Table 1's methods in its order, then
//! SwAV. [`MethodName`] is the list the compiler checks: the trainer's
//! method registry matches it exhaustively (a name without a method, or a
//! method without a name, does not compile), and [`METHOD_NAMES`], the
//! parser ([`MethodName::parse`]) and the command line's help are made
//! from it.

use crate::LossError;

macro_rules! method_names {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)+) => {
        /// A method of Table 1 (or SwAV), by name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MethodName {
            $($(#[$doc])* $variant,)+
        }

        impl MethodName {
            /// Every method, in Table 1's order, then SwAV.
            pub const ALL: [MethodName; [$(stringify!($variant)),+].len()] =
                [$(MethodName::$variant),+];

            /// The name as configs and the command line spell it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(MethodName::$variant => $name,)+
                }
            }
        }
    };
}

method_names! {
    /// NT-Xent.
    Simclr => "simclr",
    /// Predictor + EMA target.
    Byol => "byol",
    /// Predictor + stop-gradient.
    Simsiam => "simsiam",
    /// Batch standardisation per sub-batch.
    ShuffledDbn => "shuffled-dbn",
    /// Cross-correlation to the identity.
    BarlowTwins => "barlow-twins",
    /// Variance, invariance, covariance.
    Vicreg => "vicreg",
    /// Zero-CL's instance loss.
    ZeroCl => "zero-cl",
    /// Batch whitening, Cholesky.
    WMse => "w-mse",
    /// Channel whitening, ZCA, random group partition.
    CwRgp => "cw-rgp",
    /// Channel whitening, ZCA, no groups.
    Cw => "cw",
    /// Channel whitening, ZCA, fixed contiguous groups.
    CwGp => "cw-gp",
    /// PCA whitening.
    PcaWhitening => "pca-whitening",
    /// No whitening: the collapsing control.
    Plain => "plain",
    /// Swapped prediction with Sinkhorn–Knopp codes.
    Swav => "swav",
}

/// Every method name, in [`MethodName::ALL`]'s order.
pub const METHOD_NAMES: [&str; MethodName::ALL.len()] = {
    let mut names = [""; MethodName::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = MethodName::ALL[i].as_str();
        i += 1;
    }
    names
};

impl MethodName {
    /// The method called `name`; an error lists the valid names.
    pub fn parse(name: &str) -> Result<Self, LossError> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| LossError::UnknownMethod {
                name: name.to_owned(),
                valid: METHOD_NAMES.join(", "),
            })
    }
}

impl std::str::FromStr for MethodName {
    type Err = LossError;

    fn from_str(name: &str) -> Result<Self, LossError> {
        Self::parse(name)
    }
}

impl std::fmt::Display for MethodName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_parses_back_to_its_method() {
        for m in MethodName::ALL {
            assert_eq!(MethodName::parse(m.as_str()).expect("name"), m);
        }
        assert_eq!(METHOD_NAMES.len(), 14);
        assert_eq!(METHOD_NAMES[0], "simclr");
        assert_eq!(METHOD_NAMES[13], "swav");
        let err = MethodName::parse("cwrgp").expect_err("unknown");
        assert!(err.to_string().contains("cw-rgp"), "{err}");
    }
}
