using System;
using System.Collections.Generic;
using System.Threading;
using System.Threading.Tasks;

namespace Llama.Compiled;

/// <summary>
/// Exposes a synchronous, CPU-bound sequence as <see cref="IAsyncEnumerable{T}"/> without a state
/// machine per item: each <c>MoveNextAsync</c> computes the next item on the caller's thread. The
/// token passed to the method and the one passed to <c>GetAsyncEnumerator</c> (e.g. by
/// <c>WithCancellation</c>) are both honoured.
/// </summary>
internal sealed class SyncAsyncEnumerable<T>(Func<CancellationToken, IEnumerable<T>> source, CancellationToken methodToken) : IAsyncEnumerable<T>
{
    public IAsyncEnumerator<T> GetAsyncEnumerator(CancellationToken cancellationToken = default)
    {
        CancellationTokenSource? linked = null;
        CancellationToken token = methodToken;
        if (cancellationToken.CanBeCanceled && cancellationToken != methodToken)
        {
            if (methodToken.CanBeCanceled)
            {
                linked = CancellationTokenSource.CreateLinkedTokenSource(methodToken, cancellationToken);
                token = linked.Token;
            }
            else
            {
                token = cancellationToken;
            }
        }
        return new Enumerator(source(token).GetEnumerator(), linked);
    }

    private sealed class Enumerator(IEnumerator<T> inner, CancellationTokenSource? linked) : IAsyncEnumerator<T>
    {
        public T Current => inner.Current;

        public ValueTask<bool> MoveNextAsync()
        {
            try
            {
                return ValueTask.FromResult(inner.MoveNext());
            }
            catch (Exception e)
            {
                return ValueTask.FromException<bool>(e);
            }
        }

        public ValueTask DisposeAsync()
        {
            inner.Dispose();
            linked?.Dispose();
            return ValueTask.CompletedTask;
        }
    }
}
