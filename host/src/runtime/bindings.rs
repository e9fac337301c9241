//! The one `bindgen!` of the host: the `full-connector` world.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "full-connector",
    imports: { default: async | trappable },
    exports: { default: async },
});
