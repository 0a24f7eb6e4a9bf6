# Seed 002 (Varnish blog, "Backends and probes"), first snippet, verbatim apart from the added
# `vcl 4.0;`. Note: `.ssl` exists only in Varnish Cache Plus; varnishd 7.1 rejects it as an
# unknown field (the checker decides), but it is valid syntax.
vcl 4.0;

backend mybackend {
    # mandatory:
    .host = "127.0.0.1";
    #optional:
    .port = 8080;
    .host_header = "mybackend.example.com";
    .connect_timeout = 2s;
    .ssl = 1;
}
