# expect: 5:44: Expected "true" or "false"
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .probe = { .url = "/"; .expect_close = 1; }
}
