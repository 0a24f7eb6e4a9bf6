# Seed 002: minimal backend definitions and a bare backend_hint assignment (the post shows the
# `set` statement alone; here it is placed in vcl_recv). `vcl 4.0;` added.
vcl 4.0;

# look, minimal definitions:
backend alpha { .host = "192.168.0.101"; }
backend bravo { .host = "192.168.0.102"; }

sub vcl_recv {
    set req.backend_hint = alpha;
    if (req.url ~ "^/bravo/") {
        # varnishd refuses unused backends; bravo is used here.
        set req.backend_hint = bravo;
    }
}
