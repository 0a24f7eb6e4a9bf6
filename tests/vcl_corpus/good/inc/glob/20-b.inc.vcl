# Included by own_includes.vcl through `include +glob` (second).
sub pick_app3 {
    if (req.url ~ "^/three/") {
        set req.backend_hint = app3;
    }
}
