from django.urls import path, re_path

from .views import TopicApi, TopicListApi

urlpatterns = [
    path("topics", TopicListApi.as_view(), name="topic-list"),
    path("topics/", TopicListApi.as_view()),
    # (?s): a name with a newline must reach the view and get 400 "invalid topic", not a 404 page
    re_path(r"^topics/(?P<topic>(?s:.+))\Z", TopicApi.as_view(), name="topic"),
]
