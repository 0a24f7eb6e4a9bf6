# expect: 5:29: Expected '.' got ';'
vcl 4.1;
backend b {
    .host = "127.0.0.1";
    .probe = { .url = "/"; };
}
