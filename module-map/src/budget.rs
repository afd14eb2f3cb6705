//! YAML text to a generic tree within bounds, for the map and for `--set` values.
//!
//! serde_yaml_ng caps alias jumps at 100 per event of the document, which stops the classic
//! "billion laughs" but not a quadratic one: an anchor of K values referenced K times builds
//! K² values (a 60 KB map took 2 s and ~1 GB; a few hundred KB would exhaust memory). The
//! shim parses the map before `main` in every program it is preloaded into, so the text is
//! first walked by a counting visitor that gives up after [`MAX_VALUES`] values, aliases
//! expanded; only a document within that bound is then built into a [`Value`].

use std::cell::Cell;
use std::fmt;

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use serde_yaml_ng::Value;

/// Largest map text parsed (4 MiB): libyaml holds every event of a document before the first
/// value is built, so the text itself is bounded too; a real map is a few KiB.
pub const MAX_MAP_BYTES: usize = 4 << 20;

/// Most YAML values (scalars, lists, mappings, each alias counted as a full copy of its
/// anchor) in one document: a real map has a few hundred.
pub const MAX_VALUES: usize = 100_000;

/// Why [`from_str`] refused the text.
pub(crate) enum LoadError {
    /// Not YAML (or serde_yaml_ng's own limits: depth, repetition).
    Yaml(serde_yaml_ng::Error),
    /// More than [`MAX_MAP_BYTES`] bytes.
    TooLong,
    /// More than [`MAX_VALUES`] values; the line where the count ran over, when known.
    TooLarge { line: Option<usize> },
}

/// Parses `text` as one YAML document into a [`Value`], refusing documents that expand to
/// more than [`MAX_VALUES`] values.
pub(crate) fn from_str(text: &str) -> Result<Value, LoadError> {
    if text.len() > MAX_MAP_BYTES {
        return Err(LoadError::TooLong);
    }
    let count = Cell::new(0usize);
    let over = Cell::new(false);
    let counter = Counter {
        count: &count,
        over: &over,
    };
    match counter.deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        // serde_yaml_ng marks the error with the position of the value being visited.
        Err(e) if over.get() => Err(LoadError::TooLarge {
            line: e.location().map(|l| l.line()),
        }),
        Err(e) => Err(LoadError::Yaml(e)),
        Ok(()) => serde_yaml_ng::from_str(text).map_err(LoadError::Yaml),
    }
}

/// Visits every value of a document, aliases expanded, counting them; fails once the count
/// passes [`MAX_VALUES`] (and says so through `over`, to tell that failure from YAML's own).
#[derive(Clone, Copy)]
struct Counter<'c> {
    count: &'c Cell<usize>,
    over: &'c Cell<bool>,
}

impl Counter<'_> {
    fn bump<E: de::Error>(&self) -> Result<(), E> {
        let n = self.count.get() + 1;
        self.count.set(n);
        if n > MAX_VALUES {
            self.over.set(true);
            return Err(E::custom("too many values"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for Counter<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Counter<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.bump()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.bump()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.bump()
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.bump()
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.bump()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.bump()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.bump()
    }
    fn visit_bytes<E: de::Error>(self, _: &[u8]) -> Result<(), E> {
        self.bump()
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.bump()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.bump()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.bump()?;
        self.deserialize(d)
    }
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.bump()?;
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.bump()?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.bump()?;
        while map.next_entry_seed(self, self)?.is_some() {}
        Ok(())
    }
    /// A tagged value (`!tag value`): the tag, then the value.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        self.bump()?;
        let ((), value) = data.variant_seed(Tag)?;
        value.newtype_variant_seed(self)
    }
}

/// The tag of a tagged value, read and dropped.
struct Tag;

impl<'de> DeserializeSeed<'de> for Tag {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_identifier(de::IgnoredAny).map(|_| ())
    }
}
