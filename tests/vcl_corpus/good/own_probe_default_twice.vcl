# Two `probe default`: varnishd 7.1 checks both and the last one is the default probe (it is not
# a symbol, so there is no "redefined" error), whether defined before or after the backends.
vcl 4.1;

probe default { .url = "/first"; }

backend default { .host = "127.0.0.1"; }

probe default { .url = "/second"; }
