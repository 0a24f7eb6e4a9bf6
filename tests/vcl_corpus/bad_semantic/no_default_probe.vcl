# expect: 5:14: No default probe defined
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .probe = default;
}
