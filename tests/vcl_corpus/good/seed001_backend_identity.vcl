# Seed 001 ("What do you mean by 'backend'?", phk 2010) contains no VCL, only CLI patterns
# (`backend.health b1(,[::1]:8080)`). It discusses many health-polled backends, the same
# physical server declared under several VCL names, and IPv4+IPv6 endpoints. Written here in
# VCL 4.1 syntax.
vcl 4.1;

probe health {
    .url = "/";
    .interval = 5s;
    .window = 8;
    .threshold = 3;
}

backend b1 {
    .host = "127.0.0.1";
    .port = "8080";
    .probe = health;
}

# The same physical backend under another VCL name.
backend b1_again {
    .host = "127.0.0.1";
    .port = "8080";
    .probe = health;
}

backend b1_v6 {
    .host = "::1";
    .port = "8080";
    .probe = health;
}

sub vcl_recv {
    if (req.url ~ "^/v6/") {
        set req.backend_hint = b1_v6;
    } elsif (req.url ~ "^/again/") {
        set req.backend_hint = b1_again;
    } else {
        set req.backend_hint = b1;
    }
}
