// bookstore's checkpoints in the classic notebook (nbclassic): File > Revert to Checkpoint
// lists every archived version, oldest first and newest last (the session's own checkpoints
// are appended after them), each labelled to the second; "Last Checkpoint" is the newest.
//
// The classic UI was written for a single checkpoint: its menu labels read to the minute
// ("Sunday, November 29, 2026 10:35 PM" for every save of that minute) and its header takes
// the first checkpoint of the list, while the menu's default revert target is the last.
define(["jquery", "base/js/namespace", "base/js/events", "base/js/i18n", "moment"], function (
    $,
    Jupyter,
    events,
    i18n,
    moment
) {
    "use strict";

    function label(checkpoint) {
        return moment(new Date(checkpoint.last_modified)).format("dddd, LL LTS");
    }

    function renderMenu(menubar, checkpoints) {
        var ul = menubar.element.find("#restore_checkpoint").find("ul");
        ul.empty();
        if (!checkpoints || checkpoints.length === 0) {
            ul.append(
                $("<li/>").addClass("disabled").append($("<a/>").text(i18n.msg._("No checkpoints")))
            );
            return;
        }
        var seen = {};
        checkpoints.forEach(function (checkpoint) {
            var text = label(checkpoint);
            seen[text] = (seen[text] || 0) + 1;
        });
        checkpoints.forEach(function (checkpoint, index) {
            var text = label(checkpoint);
            if (seen[text] > 1) {
                // Saves within one second: tell them apart by the end of their id.
                text += " \u00b7 " + checkpoint.id.slice(-6);
            }
            if (index === checkpoints.length - 1) {
                text += " (latest)";
            }
            ul.append(
                $("<li/>").append(
                    $("<a/>")
                        .attr("href", "#")
                        .attr("title", checkpoint.id)
                        .attr("data-checkpoint-id", checkpoint.id)
                        .text(text)
                        .click(function () {
                            Jupyter.notebook.restore_checkpoint_dialog(checkpoint);
                        })
                )
            );
        });
    }

    function showLatest() {
        var checkpoints = Jupyter.notebook.checkpoints || [];
        Jupyter.menubar.update_restore_checkpoint(checkpoints);
        Jupyter.save_widget._set_last_checkpoint(
            checkpoints.length ? checkpoints[checkpoints.length - 1] : null
        );
    }

    function load_ipython_extension() {
        var menubar = Jupyter.menubar;
        menubar.update_restore_checkpoint = function (checkpoints) {
            renderMenu(menubar, checkpoints);
        };
        // Runs after the save widget's own handler, which shows the first checkpoint.
        events.on("checkpoints_listed.Notebook", showLatest);
        // The list may have arrived before this extension was loaded.
        showLatest();
    }

    return { load_ipython_extension: load_ipython_extension };
});
