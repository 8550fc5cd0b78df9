"""Latest wins, driven by real threads: a burst of requests runs far fewer jobs than
requests, each for the newest request of its moment, and only the last answer is used."""

import threading
import time

from napari_tumorseg.jobs import LatestWins


def test_a_burst_runs_the_first_and_the_newest_only():
    jobs = LatestWins()
    ran, used, threads = [], [], []
    done = threading.Event()

    def request(value):
        jobs.supersede()
        if jobs.defer_if_busy():
            latest[0] = value
            return
        gen = jobs.start()
        cancel = jobs.cancel_for(gen)

        def work():
            ran.append(value)
            for _ in range(50):  # a slow job that looks at cancel() between stages
                if cancel():
                    break
                time.sleep(0.01)
            if jobs.is_current(gen):
                used.append(value)
            if jobs.finish():
                request(latest[0])
            elif jobs.is_current(gen) or not jobs.running:
                done.set()

        t = threading.Thread(target=work)
        threads.append(t)
        t.start()

    latest = [None]
    for value in range(10):
        request(value)
        time.sleep(0.002)
    assert done.wait(10)
    for t in list(threads):
        t.join(10)
    # Each job starts for the newest request of its moment: never stacked, never out of order.
    assert ran[0] == 0 and ran[-1] == 9 and ran == sorted(set(ran)) and len(ran) < 10, ran
    assert used == [9]  # the first answer was stale by the time it came


def test_cancel_turns_true_only_for_older_generations():
    jobs = LatestWins()
    gen = jobs.start()
    cancel = jobs.cancel_for(gen)
    assert not cancel() and jobs.is_current(gen)
    jobs.supersede()
    assert cancel() and not jobs.is_current(gen)
    assert not jobs.finish()  # nothing waited
