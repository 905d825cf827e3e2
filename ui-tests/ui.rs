//! Compile-time behaviour of the derives: what must compile, and the exact error for each
//! mistake. Regenerate the `.stderr` files with `TRYBUILD=overwrite` and read every change.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("pass/*.rs");
    cases.compile_fail("fail/*.rs");
}
