# expect: 5:26: Window must be 64 or less.
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .probe = { .window = 65; .threshold = 3; }
}
