/* The menu (chapter list) and contents buttons that the Book theme shows above the article.
   The themes' scripts bind only the first .primary-toggle and .secondary-toggle of a page: the ones in
   the page header, which the Book theme hides. So a click on a visible button is passed on to the bound
   one: on a phone it opens the chapter list or the contents, on a wide screen it folds the sidebar away. */
document.addEventListener("DOMContentLoaded", () => {
  for (const kind of ["primary-toggle", "secondary-toggle"]) {
    const [bound, ...shown] = document.querySelectorAll(`button.${kind}`);
    for (const button of shown) {
      button.addEventListener("click", (event) => {
        event.preventDefault();
        event.stopPropagation();
        bound.click();
      });
    }
  }
});

/* The language switch: every page links to the same page in the other edition (the English site at the
   root, the Chinese one in zh/). The chapters, the home page, the workshop guide, the index and the search
   page exist in both; the pages only the English site has (API, solutions, times) link to the other's home. */
document.addEventListener("DOMContentLoaded", () => {
  const root = new URL(document.documentElement.dataset.content_root || "./", window.location.href);
  const chinese = (document.documentElement.lang || "").startsWith("zh");
  let page = window.location.href.split("#")[0].split("?")[0].slice(root.href.length);
  if (!/^((index|workshop|genindex|search)\.html|chapters\/[\w-]+\.html)$/.test(page)) page = "index.html";
  const link = document.createElement("a");
  link.className = "diffedu-language";
  link.href = new URL((chinese ? "../" : "zh/") + page, root).href;
  link.textContent = chinese ? "English" : "简体中文";
  link.lang = chinese ? "en" : "zh-CN";
  link.title = chinese ? "Read this page in English" : "阅读本页的中文版";
  const header = document.querySelector(".article-header-buttons") || document.querySelector("article") || document.body;
  header.prepend(link);
});
