//! Misuses of `#[derive(StateKey)]` and of the keys it generates, with the errors users see.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
