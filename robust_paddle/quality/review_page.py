"""The review page served by :mod:`robust_paddle.quality.review`: one self-contained HTML file (no external
scripts, fonts or styles, so it works offline and leaks nothing)."""

PAGE = r"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>robust_paddle label review</title>
<style>
body{font:14px/1.4 system-ui,-apple-system,"DejaVu Sans",sans-serif;margin:0;background:#f6f7f9;color:#1d2330}
header{position:sticky;top:0;background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center;
flex-wrap:wrap;z-index:2}
header h1{font-size:16px;margin:0 12px 0 0}
header select,header button{font:inherit;padding:3px 6px}
#progress{margin-left:auto;opacity:.85}
main{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:12px;padding:16px}
.card{background:#fff;border:2px solid #dde1e8;border-radius:8px;padding:10px;display:flex;flex-direction:column;gap:6px}
.card.sel{border-color:#2f6fde;box-shadow:0 0 0 3px #2f6fde33}
.card.keep{background:#eefaf0}.card.change{background:#fff6e6}.card.unsure{background:#f1f1f1}
.thumb{height:110px;display:flex;align-items:center;justify-content:center;background:#fafbfc;border-radius:4px}
.thumb img{max-height:106px;max-width:100%;image-rendering:pixelated}
.text{max-height:110px;overflow:auto;white-space:pre-wrap;background:#fafbfc;border-radius:4px;padding:4px}
.meta{font-size:12px;color:#5a6272}.labels b{color:#b3261e}.labels i{color:#1a7f37;font-style:normal;font-weight:600}
.btns{display:flex;gap:4px;flex-wrap:wrap}.btns button{flex:1;font:inherit;padding:4px;cursor:pointer}
.btns select{flex:2;font:inherit}
.done{font-size:12px;font-weight:600}
footer{padding:8px 16px 24px;color:#5a6272}
kbd{background:#eef0f3;border:1px solid #cfd4dc;border-radius:3px;padding:0 4px;font-size:12px}
</style></head>
<body>
<header><h1>Label review</h1>
<label>class <select id="cls"><option value="">all</option></select></label>
<label>show <select id="status"><option value="all">all</option><option value="open">not reviewed</option>
<option value="done">reviewed</option></select></label>
<button id="prev">&larr; page</button><span id="pageinfo"></span><button id="next">page &rarr;</button>
<span id="progress"></span></header>
<main id="grid"></main>
<footer>Most suspect first. Keys: <kbd>k</kbd> keep, <kbd>s</kbd> change to suggested, <kbd>0</kbd>-<kbd>9</kbd>
change to class, <kbd>u</kbd> unsure, <kbd>j</kbd>/<kbd>n</kbd> next, <kbd>p</kbd> previous, <kbd>]</kbd>/<kbd>[</kbd>
page. Every decision is saved at once.</footer>
<script>
"use strict";
const S={page:1,per:24,sel:0,items:[],names:[],total:0};
const $=id=>document.getElementById(id);
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]));}
async function load(){
  const q=new URLSearchParams({page:S.page,per_page:S.per,status:$("status").value});
  if($("cls").value!=="")q.set("class",$("cls").value);
  const r=await fetch("/api/items?"+q);const d=await r.json();
  if(!r.ok){$("grid").textContent=d.error;return;}
  S.items=d.items;S.names=d.class_names;S.total=d.total;S.sel=Math.min(S.sel,Math.max(0,d.items.length-1));
  if($("cls").options.length===1)d.class_names.forEach((n,i)=>$("cls").add(new Option(i+": "+n,i)));
  const pages=Math.max(1,Math.ceil(d.total/S.per));
  $("pageinfo").textContent=" page "+S.page+" / "+pages+" ";
  $("progress").textContent=d.decided+" of "+d.samples+" reviewed";
  render();
}
function render(){
  const g=$("grid");g.innerHTML="";
  S.items.forEach((it,i)=>{
    const c=document.createElement("div");const dec=it.decision;
    c.className="card"+(i===S.sel?" sel":"")+(dec?" "+dec.action:"");c.dataset.i=i;
    const body=it.text!==undefined&&it.text!==""?'<div class="text">'+esc(it.text)+'</div>'
      :'<div class="thumb"><img alt="sample '+it.index+'" src="/api/thumb/'+it.index+'" onerror="this.replaceWith(document.createTextNode(\'no image\'))"></div>';
    const opts=S.names.map((n,k)=>'<option value="'+k+'"'+(k===it.suggested_label?" selected":"")+'>'+k+": "+esc(n)+"</option>").join("");
    c.innerHTML=body+'<div class="labels">given <b>'+esc(it.given_name||it.given_label)+'</b> &middot; suggested <i>'
      +esc(it.suggested_name||it.suggested_label)+'</i></div><div class="meta">'+esc(it.sample)+' &middot; clean p '
      +(it.clean_prob===undefined||it.clean_prob===""?"-":Number(it.clean_prob).toFixed(3))+'</div>'
      +'<div class="btns"><button data-a="keep">keep</button><select>'+opts+'</select><button data-a="change">change</button>'
      +'<button data-a="unsure">unsure</button></div><div class="done">'+(dec?esc(dec.action)+(dec.action==="change"?" &rarr; "
      +esc(S.names[dec.label]||dec.label):""):"")+'</div>';
    c.addEventListener("click",e=>{S.sel=i;const a=e.target.dataset&&e.target.dataset.a;
      if(a)decide(i,a,a==="change"?Number(c.querySelector("select").value):undefined);else mark();});
    g.appendChild(c);
  });
}
function mark(){document.querySelectorAll(".card").forEach((c,i)=>c.classList.toggle("sel",i===S.sel));
  const c=document.querySelector(".card.sel");if(c)c.scrollIntoView({block:"nearest"});}
async function decide(i,action,label){
  const it=S.items[i];if(!it)return;const body={index:it.index,action:action};
  if(action==="change")body.label=label;
  const r=await fetch("/api/decision",{method:"POST",headers:{"Content-Type":"application/json"},body:JSON.stringify(body)});
  const d=await r.json();if(!r.ok){alert(d.error);return;}
  it.decision=d.decision;$("progress").textContent=d.decided+" of "+S.total+" reviewed";
  if(S.sel<S.items.length-1)S.sel++;render();mark();
}
document.addEventListener("keydown",e=>{
  if(e.target.tagName==="SELECT"||e.ctrlKey||e.metaKey||e.altKey)return;
  const k=e.key;
  if(k==="k")decide(S.sel,"keep");else if(k==="u")decide(S.sel,"unsure");
  else if(k==="s"&&S.items[S.sel])decide(S.sel,"change",S.items[S.sel].suggested_label);
  else if(/^[0-9]$/.test(k)&&Number(k)<S.names.length)decide(S.sel,"change",Number(k));
  else if(k==="j"||k==="n"){S.sel=Math.min(S.sel+1,S.items.length-1);mark();}
  else if(k==="p"){S.sel=Math.max(S.sel-1,0);mark();}
  else if(k==="]")$("next").click();else if(k==="[")$("prev").click();
});
$("next").onclick=()=>{if(S.page*S.per<S.total){S.page++;S.sel=0;load();}};
$("prev").onclick=()=>{if(S.page>1){S.page--;S.sel=0;load();}};
$("cls").onchange=$("status").onchange=()=>{S.page=1;S.sel=0;load();};
load();
</script></body></html>
"""
