import { L, el, fill } from "./common.js"; fill(document.getElementById("app"), el("p", {}, L("建设中", "coming")));
