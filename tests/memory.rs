//! `memory::release_freed` (called after a model loads) must give freed heap pages back to the
//! system: glibc keeps a freed block mapped while anything above it in the heap is still in use,
//! which is how a model load's temporaries stayed resident for the life of the daemon.
//! A test binary of its own: no other test allocates beside it while it reads its RSS.

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    statm.split_whitespace().nth(1).unwrap().parse::<usize>().unwrap() * 4096
}

#[test]
fn freed_heap_pages_go_back_to_the_system() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        eprintln!("skipped: musl and other allocators return memory by themselves");
        return;
    }
    const MB: usize = 1 << 20;
    // 64 MB in 64 KB blocks (below glibc's mmap threshold: they come from the heap), written so
    // their pages are resident, then a small block above them that stays in use.
    let blocks: Vec<Vec<u8>> = (0..1024).map(|i| vec![i as u8 | 1; 64 * 1024]).collect();
    let pinned = vec![1u8; 64];
    drop(blocks);
    let held = resident_bytes();
    assert!(held > 64 * MB, "only {} MB resident after the free: the allocator gave the blocks back by itself, so this test shows nothing", held / MB);
    cvedge::memory::release_freed();
    let after = resident_bytes();
    assert!(after + 48 * MB < held, "{} MB resident before the release, {} MB after: the freed 64 MB were not given back", held / MB, after / MB);
    assert_eq!(pinned[0], 1);
}
