# expect: 5:25: Expected ID got ';'
vcl 4.1;
backend default {
    .host = "127.0.0.1";
    .connect_timeout = 1;
}
