# expect: 5:36: Probe .port must be a port number from 1 to 65535, got '"health"'
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .probe = { .url = "/"; .port = "health"; }
}
