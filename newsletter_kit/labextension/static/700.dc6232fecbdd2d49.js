"use strict";(self.rspackChunknewsletter_kit=self.rspackChunknewsletter_kit||[]).push([[700],{646(e,r,n){var t=n(601),a=n.n(t),o=n(314),i=(n.n(o))()(a());i.push([e.id,`/* The Newsletter sidebar and status bar item; JupyterLab's theme variables only. */
.nk-lab-sidebar {
  padding: 8px 12px;
  overflow-y: auto;
  color: var(--jp-ui-font-color1);
  background: var(--jp-layout-color1);
  font-size: var(--jp-ui-font-size1);
}

.nk-lab-sidebar header {
  display: flex;
  align-items: center;
  justify-content: space-between;
}

.nk-lab-sidebar h2 {
  font-size: var(--jp-ui-font-size3);
  margin: 4px 0;
}

.nk-lab-sidebar h3 {
  font-size: var(--jp-ui-font-size1);
  text-transform: uppercase;
  letter-spacing: 0.04em;
  color: var(--jp-ui-font-color2);
  margin: 14px 0 6px;
}

.nk-lab-sidebar p {
  margin: 4px 0;
}

.nk-lab-muted {
  color: var(--jp-ui-font-color2);
}

.nk-lab-error {
  color: var(--jp-error-color1);
}

.nk-lab-refresh {
  background: none;
  border: none;
  cursor: pointer;
  font-size: 16px;
  color: var(--jp-ui-font-color1);
}

.nk-lab-bar {
  display: flex;
  height: 8px;
  border-radius: 4px;
  overflow: hidden;
  background: var(--jp-layout-color3);
  margin: 4px 0;
}

.nk-lab-bar-used,
.nk-lab-bar-sent {
  background: var(--jp-success-color1);
}

.nk-lab-bar-reserved,
.nk-lab-bar-unknown {
  background: var(--jp-warn-color1);
}

.nk-lab-bar-failed {
  background: var(--jp-error-color1);
}

.nk-lab-bar-pending {
  background: var(--jp-brand-color2);
}

.nk-lab-campaign {
  padding: 6px 0;
  border-bottom: 1px solid var(--jp-border-color2);
}

.nk-lab-campaign-head {
  display: flex;
  justify-content: space-between;
  font-weight: 600;
}

.nk-lab-badge {
  font-weight: normal;
  font-size: var(--jp-ui-font-size0);
  padding: 0 6px;
  border-radius: 8px;
  background: var(--jp-layout-color3);
}

.nk-lab-badge-sending {
  background: var(--jp-brand-color3);
}

.nk-lab-badge-done {
  background: var(--jp-success-color3);
}

.nk-lab-buttons {
  display: flex;
  flex-wrap: wrap;
  gap: 6px;
  margin: 16px 0 8px;
}

.nk-lab-store {
  font-size: var(--jp-ui-font-size0);
  /* One line, cut with an ellipsis (the whole path is the tooltip): never broken mid-word. */
  white-space: nowrap;
  overflow: hidden;
  text-overflow: ellipsis;
}

.nk-lab-statusbar {
  cursor: pointer;
}

.nk-lab-more {
  display: block;
  margin: 4px 0;
  color: var(--jp-content-link-color);
  cursor: pointer;
}
`,""]),n.d(r,{},{A:i})},314(e){e.exports=function(e){var r=[];return r.toString=function(){return this.map(function(r){var n="",t=void 0!==r[5];return r[4]&&(n+="@supports (".concat(r[4],") {")),r[2]&&(n+="@media ".concat(r[2]," {")),t&&(n+="@layer".concat(r[5].length>0?" ".concat(r[5]):""," {")),n+=e(r),t&&(n+="}"),r[2]&&(n+="}"),r[4]&&(n+="}"),n}).join("")},r.i=function(e,n,t,a,o){"string"==typeof e&&(e=[[null,e,void 0]]);var i={};if(t)for(var s=0;s<this.length;s++){var c=this[s][0];null!=c&&(i[c]=!0)}for(var l=0;l<e.length;l++){var p=[].concat(e[l]);t&&i[p[0]]||(void 0!==o&&(void 0===p[5]||(p[1]="@layer".concat(p[5].length>0?" ".concat(p[5]):""," {").concat(p[1],"}")),p[5]=o),n&&(p[2]&&(p[1]="@media ".concat(p[2]," {").concat(p[1],"}")),p[2]=n),a&&(p[4]?(p[1]="@supports (".concat(p[4],") {").concat(p[1],"}"),p[4]=a):p[4]="".concat(a)),r.push(p))}},r}},601(e){e.exports=function(e){return e[1]}},72(e){var r=[];function n(e){for(var n=-1,t=0;t<r.length;t++)if(r[t].identifier===e){n=t;break}return n}function t(e,t){for(var a={},o=[],i=0;i<e.length;i++){var s=e[i],c=t.base?s[0]+t.base:s[0],l=a[c]||0,p="".concat(c," ").concat(l);a[c]=l+1;var u=n(p),d={css:s[1],media:s[2],sourceMap:s[3],supports:s[4],layer:s[5]};if(-1!==u)r[u].references++,r[u].updater(d);else{var f=function(e,r){var n=r.domAPI(r);return n.update(e),function(r){r?(r.css!==e.css||r.media!==e.media||r.sourceMap!==e.sourceMap||r.supports!==e.supports||r.layer!==e.layer)&&n.update(e=r):n.remove()}}(d,t);t.byIndex=i,r.splice(i,0,{identifier:p,updater:f,references:1})}o.push(p)}return o}e.exports=function(e,a){var o=t(e=e||[],a=a||{});return function(e){e=e||[];for(var i=0;i<o.length;i++){var s=n(o[i]);r[s].references--}for(var c=t(e,a),l=0;l<o.length;l++){var p=n(o[l]);0===r[p].references&&(r[p].updater(),r.splice(p,1))}o=c}}},659(e){var r={};e.exports=function(e,n){var t=function(e){if(void 0===r[e]){var n=document.querySelector(e);if(window.HTMLIFrameElement&&n instanceof window.HTMLIFrameElement)try{n=n.contentDocument.head}catch(e){n=null}r[e]=n}return r[e]}(e);if(!t)throw Error("Couldn't find a style target. This probably means that the value for the 'insert' parameter is invalid.");t.appendChild(n)}},540(e){e.exports=function(e){var r=document.createElement("style");return e.setAttributes(r,e.attributes),e.insert(r,e.options),r}},56(e,r,n){e.exports=function(e){var r=n.nc;r&&e.setAttribute("nonce",r)}},825(e){e.exports=function(e){if("u"<typeof document)return{update:function(){},remove:function(){}};var r=e.insertStyleElement(e);return{update:function(n){var t,a,o;t="",n.supports&&(t+="@supports (".concat(n.supports,") {")),n.media&&(t+="@media ".concat(n.media," {")),(a=void 0!==n.layer)&&(t+="@layer".concat(n.layer.length>0?" ".concat(n.layer):""," {")),t+=n.css,a&&(t+="}"),n.media&&(t+="}"),n.supports&&(t+="}"),(o=n.sourceMap)&&"u">typeof btoa&&(t+="\n/*# sourceMappingURL=data:application/json;base64,".concat(btoa(unescape(encodeURIComponent(JSON.stringify(o))))," */")),e.styleTagTransform(t,r,e.options)},remove:function(){var e;null===(e=r).parentNode||e.parentNode.removeChild(e)}}}},113(e){e.exports=function(e,r){if(r.styleSheet)r.styleSheet.cssText=e;else{for(;r.firstChild;)r.removeChild(r.firstChild);r.appendChild(document.createTextNode(e))}}},959(e,r,n){var t=n(72),a=n.n(t),o=n(825),i=n.n(o),s=n(659),c=n.n(s),l=n(56),p=n.n(l),u=n(540),d=n.n(u),f=n(113),b=n.n(f),v=n(646),h={};h.styleTagTransform=b(),h.setAttributes=p(),h.insert=c().bind(null,"head"),h.domAPI=i(),h.insertStyleElement=d(),a()(v.A,h),v.A&&v.A.locals&&v.A.locals}}]);