//! A generational slab in fixed pages: O(1) insert, lookup and removal by
//! `(slot, generation)`.
//!
//! Pages keep growth predictable (a new page is the only allocation, so an
//! idle entry's cost does not double when a `Vec` reallocates). A freed slot
//! is reused with the next generation; a slot whose generation would wrap is
//! retired for good, so a `(slot, generation)` pair is never issued twice and
//! a stale handle can never reach a newer entry. (Retirement costs one slot
//! per 2^32 reuses of it: at a million reuses of one slot per second, one
//! slot per 71 minutes, a few hundred bytes.)

const PAGE_BITS: usize = 10;
const PAGE: usize = 1 << PAGE_BITS;
const PAGE_MASK: usize = PAGE - 1;

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// See the module documentation.
pub(crate) struct Slab<T> {
    pages: Vec<Vec<Slot<T>>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            pages: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    fn slot(&self, index: u32) -> Option<&Slot<T>> {
        let i = index as usize;
        self.pages.get(i >> PAGE_BITS)?.get(i & PAGE_MASK)
    }

    fn slot_mut(&mut self, index: u32) -> Option<&mut Slot<T>> {
        let i = index as usize;
        self.pages.get_mut(i >> PAGE_BITS)?.get_mut(i & PAGE_MASK)
    }

    /// Stores `value`; returns its `(slot, generation)`, or `None` when all
    /// 2^32 slots are in use or retired.
    pub fn insert(&mut self, value: T) -> Option<(u32, u32)> {
        if let Some(index) = self.free.pop() {
            let slot = self.slot_mut(index)?;
            slot.value = Some(value);
            let generation = slot.generation;
            self.len += 1;
            return Some((index, generation));
        }
        let next = self.pages.len() * PAGE - self.pages.last().map_or(0, |p| PAGE - p.len());
        let index = u32::try_from(next).ok().filter(|i| *i < u32::MAX)?;
        if self.pages.last().is_none_or(|p| p.len() == PAGE) {
            self.pages.push(Vec::with_capacity(PAGE));
        }
        self.pages.last_mut()?.push(Slot {
            generation: 0,
            value: Some(value),
        });
        self.len += 1;
        Some((index, 0))
    }

    /// The entry at `(index, generation)`, if it is still there.
    pub fn get(&self, index: u32, generation: u32) -> Option<&T> {
        self.slot(index)
            .filter(|s| s.generation == generation)?
            .value
            .as_ref()
    }

    /// Mutable access to the entry at `(index, generation)`.
    pub fn get_mut(&mut self, index: u32, generation: u32) -> Option<&mut T> {
        self.slot_mut(index)
            .filter(|s| s.generation == generation)?
            .value
            .as_mut()
    }

    /// Removes and returns the entry; its slot gets a new generation.
    pub fn remove(&mut self, index: u32, generation: u32) -> Option<T> {
        let slot = self
            .slot_mut(index)
            .filter(|s| s.generation == generation)?;
        let value = slot.value.take()?;
        let reusable = match slot.generation.checked_add(1) {
            Some(next) => {
                slot.generation = next;
                true
            }
            // Retired: never reused, see the module documentation.
            None => false,
        };
        if reusable {
            self.free.push(index);
        }
        self.len -= 1;
        Some(value)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the slab holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry with its `(slot, generation)`, in slot order
    /// (deterministic).
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32, &T)> + '_ {
        self.pages
            .iter()
            .flatten()
            .enumerate()
            .filter_map(|(i, s)| Some((i as u32, s.generation, s.value.as_ref()?)))
    }

    #[cfg(test)]
    fn set_generation(&mut self, index: u32, generation: u32) {
        if let Some(s) = self.slot_mut(index) {
            s.generation = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_handles_never_reach_new_entries() {
        let mut s = Slab::default();
        let (i, g) = s.insert("a").unwrap();
        assert_eq!(s.remove(i, g), Some("a"));
        let (i2, g2) = s.insert("b").unwrap();
        assert_eq!(i2, i);
        assert_ne!(g2, g);
        assert_eq!(s.get(i, g), None);
        assert_eq!(s.get(i2, g2), Some(&"b"));
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_slot_at_the_last_generation_is_retired_not_wrapped() {
        let mut s = Slab::default();
        let (i, _) = s.insert(1).unwrap();
        s.set_generation(i, u32::MAX);
        assert_eq!(s.remove(i, u32::MAX), Some(1));
        // The retired slot is not reused: a new entry gets a new slot.
        let (j, g) = s.insert(2).unwrap();
        assert_ne!(j, i);
        assert_eq!(g, 0);
        assert_eq!(s.get(i, 0), None);
    }

    #[test]
    fn grows_by_pages_and_iterates_in_slot_order() {
        let mut s = Slab::default();
        for n in 0..(PAGE + 3) {
            assert_eq!(s.insert(n).map(|(i, _)| i as usize), Some(n));
        }
        assert_eq!(s.pages.len(), 2);
        let order: Vec<usize> = s.iter().map(|(_, _, v)| *v).collect();
        assert_eq!(order, (0..PAGE + 3).collect::<Vec<_>>());
    }
}
