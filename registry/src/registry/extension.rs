//! What a protocol adapter keeps with a registration beyond the registry's own model — what a
//! Eureka client said that the native model has no place for, say. The registry stores,
//! replicates and gives it back unchanged, and never looks inside: it knows no protocol.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

/// A kind of extension: an adapter's own type.
pub(crate) trait ExtensionData: Any + Debug + Send + Sync {
    /// Whether `other` is an extension of the same kind with the same content.
    fn same_as(&self, other: &dyn ExtensionData) -> bool;
}

/// An extension kept with a registration; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Extension(Arc<dyn ExtensionData>);

impl Extension {
    /// Keeps `data`.
    pub(crate) fn new(data: impl ExtensionData) -> Self {
        Self(Arc::new(data))
    }

    /// The data, if it is a `T`.
    pub(crate) fn get<T: ExtensionData>(&self) -> Option<&T> {
        (self.0.as_ref() as &dyn Any).downcast_ref()
    }
}

impl PartialEq for Extension {
    fn eq(&self, other: &Self) -> bool {
        self.0.same_as(other.0.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Tag(&'static str);

    impl ExtensionData for Tag {
        fn same_as(&self, other: &dyn ExtensionData) -> bool {
            (other as &dyn Any).downcast_ref::<Self>() == Some(self)
        }
    }

    #[derive(Debug)]
    struct Other;

    impl ExtensionData for Other {
        fn same_as(&self, _: &dyn ExtensionData) -> bool {
            false
        }
    }

    #[test]
    fn kept_as_given_and_compared_by_content() {
        let a = Extension::new(Tag("a"));
        assert_eq!(a.get::<Tag>(), Some(&Tag("a")));
        assert!(a.get::<Other>().is_none());
        assert_eq!(a, Extension::new(Tag("a")));
        assert_ne!(a, Extension::new(Tag("b")));
        assert_ne!(a, Extension::new(Other));
    }
}
