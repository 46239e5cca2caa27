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
