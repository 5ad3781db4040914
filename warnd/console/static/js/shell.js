// Pages with no data of their own (e.g. "not allowed"): only the top bar's actions.
import "./common.js";
