# expect: 4:12: /* ... */ comment contains /*
vcl 4.1;
backend default { .host = "127.0.0.1"; }
/* outer   /* inner */
