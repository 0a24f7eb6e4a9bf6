# Seed 004: the `none` backend is false in a boolean context.
vcl 4.1;

backend nil none;

sub vcl_recv {
    set req.backend_hint = nil;
    if (! req.backend_hint) {
        return (synth(200, "We get here"));
    }
}
