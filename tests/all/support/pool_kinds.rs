//! `rules_for_pools!`: one test per (kind of pool, rule). Each rule is a
//! function taking a pool constructor; each kind becomes a module, so a
//! failure names both (`arena::free_of_unknown_pointer...`).
//!
//! ```ignore
//! rules_for_pools!([heap => Pool::new, arena => Pool::arena]; rule_a, rule_b);
//! ```

macro_rules! rules_for_pools {
    ([$($kind:ident => $make:path),+ $(,)?]; $($rule:ident),* $(,)?) => {
        rules_for_pools!(@kinds [$($kind => $make),+] [$($rule),*]);
    };
    (@kinds [$kind:ident => $make:path $(, $rest:ident => $rest_make:path)*] [$($rule:ident),*]) => {
        mod $kind {
            $(#[test] fn $rule() { super::$rule($make) })*
        }
        rules_for_pools!(@kinds [$($rest => $rest_make),*] [$($rule),*]);
    };
    (@kinds [] [$($rule:ident),*]) => {};
}
