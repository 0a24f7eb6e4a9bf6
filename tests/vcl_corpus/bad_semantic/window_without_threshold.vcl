# expect: 5:26: Must specify .threshold with .window
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .probe = { .window = 5; }
}
